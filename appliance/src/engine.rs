//! The poll-mode engine: one run-to-completion worker per queue id, pinned
//! to its core, owning that queue's two AF_XDP sockets (one per port) over
//! one shared UMEM.
//!
//! A worker loops: read the clock once, take a batch from each port's RX
//! ring, run the pipeline over it, push forwards and fragments to the other
//! port's TX ring and ICMP errors back to the ingress port's, free drops,
//! flush TX (kicking the kernel only when its need-wakeup flag asks), reap
//! completions, refill the fill rings. No allocation, lock, syscall (beyond
//! the wakeups the rings ask for) or log line per packet.
//!
//! Management (the `mtugate-mgmt` crate) costs a round one atomic load and
//! compare ([`WorkerLink::signalled`]); only when the management thread
//! asks does the worker, between two rounds (a batch boundary), apply a new
//! configuration and publish its counters (plus the kernel's AF_XDP
//! statistics: one `getsockopt` per port per interval). With statistics on,
//! a round that found work also reads the clock once more, after flushing
//! TX: the round's time from taking its frames off RX to putting them on
//! TX is their dwell time, and divided by the frames, the cost per packet;
//! both go into HdrHistograms.

use mtugate_datapath::pipeline::{
    process_frame, Config, Counters, ExtraFrames, State, Verdict, PORTS,
};
use mtugate_datapath::xsk::{Frame, FrameCounts, Port, PortCounters, QueuePair, XskStats};
use mtugate_mgmt::{IoCounters, KernelStats, WorkerCounters, WorkerLink};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Spare frames a worker keeps at hand for fragments: enough for a
/// 1500-byte packet at any MTU >= 68 several times over.
const STASH: usize = 64;
/// Empty polls in a row after which an idle worker sleeps in `poll(2)`
/// until a frame arrives (at most [`IDLE_WAIT_MS`]).
const IDLE_POLLS: u32 = 4096;
/// Longest idle sleep, so the stop flag is seen promptly.
const IDLE_WAIT_MS: i32 = 10;
/// How long a stopping worker waits to hand its last snapshot over.
const FINAL_PUBLISH_WAIT: Duration = Duration::from_millis(200);

/// What a worker hands back when it stops.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Queue id.
    pub queue: u32,
    /// Pipeline counters by ingress port.
    pub counters: [Counters; PORTS],
    /// AF_XDP work counters by port.
    pub io: [PortCounters; PORTS],
    /// Kernel AF_XDP statistics by port (None if the query failed).
    pub kernel: [Option<XskStats>; PORTS],
    /// Frames sent back to the free list because a TX ring was full.
    pub tx_ring_full_drops: [u64; PORTS],
    /// Frames put on the TX path of each (egress) port.
    pub tx_packets: [u64; PORTS],
    /// Bytes of those frames.
    pub tx_bytes: [u64; PORTS],
    /// Where the UMEM frames were at the end.
    pub frames: FrameCounts,
    /// Frame conservation check result at the end (`None` when it held).
    pub conservation_error: Option<String>,
    /// Polls that found work, and all polls.
    pub busy_polls: u64,
    /// All polls.
    pub polls: u64,
}

/// Free frames lent to the pipeline for fragments.
struct Extra<'a> {
    qp: &'a QueuePair,
    stash: &'a mut Vec<Frame>,
    out: &'a mut Vec<Frame>,
}

impl ExtraFrames for Extra<'_> {
    fn available(&self) -> usize {
        self.stash.len()
    }

    fn next_buf(&mut self) -> Option<&mut [u8]> {
        let f = self.stash.last_mut()?;
        Some(self.qp.buf_mut(f))
    }

    fn commit(&mut self, len: usize) {
        if let Some(mut f) = self.stash.pop() {
            self.qp.set_len(&mut f, len);
            self.out.push(f);
        }
    }
}

/// One worker: a queue pair, the pipeline state, and its scratch vectors
/// (allocated once, at start).
pub struct Worker {
    qp: QueuePair,
    cfg: Arc<Config>,
    state: State,
    rx: Vec<Frame>,
    stash: Vec<Frame>,
    frags: Vec<Frame>,
    tx_ring_full_drops: [u64; PORTS],
    tx_packets: [u64; PORTS],
    tx_bytes: [u64; PORTS],
    polls: u64,
    busy_polls: u64,
    link: WorkerLink,
}

fn io_counters(c: PortCounters) -> IoCounters {
    IoCounters {
        rx_frames: c.rx_frames,
        tx_frames: c.tx_frames,
        tx_completed: c.tx_completed,
        tx_kicks: c.tx_kicks,
        fill_frames: c.fill_frames,
    }
}

fn kernel_stats(k: XskStats) -> KernelStats {
    KernelStats {
        rx_dropped: k.rx_dropped,
        rx_ring_full: k.rx_ring_full,
        fill_ring_empty: k.rx_fill_ring_empty_descs,
        tx_ring_empty: k.tx_ring_empty_descs,
        rx_invalid_descs: k.rx_invalid_descs,
        tx_invalid_descs: k.tx_invalid_descs,
    }
}

impl Worker {
    /// A worker for `qp`, with pipeline state seeded by `seed`, linked to
    /// the management thread by `link` ([`WorkerLink::detached`] for none).
    pub fn new(qp: QueuePair, cfg: Arc<Config>, seed: u64, link: WorkerLink) -> Worker {
        let batch = qp.batch();
        let state = State::new(&cfg, 0, seed);
        Worker {
            qp,
            cfg,
            state,
            rx: Vec::with_capacity(batch),
            stash: Vec::with_capacity(STASH),
            frags: Vec::with_capacity(STASH),
            tx_ring_full_drops: [0; PORTS],
            tx_packets: [0; PORTS],
            tx_bytes: [0; PORTS],
            polls: 0,
            busy_polls: 0,
            link,
        }
    }

    fn top_up_stash(&mut self) {
        while self.stash.len() < STASH {
            match self.qp.alloc() {
                Some(f) => self.stash.push(f),
                None => break,
            }
        }
    }

    #[inline]
    fn tx(&mut self, port: Port, f: Frame) {
        let len = f.len() as u64;
        match self.qp.tx_push(port, f) {
            Ok(()) => {
                self.tx_packets[port.index()] += 1;
                self.tx_bytes[port.index()] += len;
            }
            Err(f) => {
                self.tx_ring_full_drops[port.index()] += 1;
                self.qp.free(f);
            }
        }
    }

    /// Everything this worker counts, for the management thread.
    fn snapshot(&self) -> WorkerCounters {
        WorkerCounters {
            pipeline: self.state.counters,
            io: Port::BOTH.map(|p| io_counters(self.qp.counters(p))),
            kernel: Port::BOTH.map(|p| self.qp.stats(p).ok().map(kernel_stats)),
            tx_packets: self.tx_packets,
            tx_bytes: self.tx_bytes,
            tx_ring_full_drops: self.tx_ring_full_drops,
            polls: self.polls,
            busy_polls: self.busy_polls,
            frames_in_flight: self.qp.frames_in_flight() as u64,
            frames_total: self.qp.frame_count() as u64,
        }
    }

    /// What the management thread asked for: a new configuration (applied
    /// here, between two rounds) and a snapshot. Off the fast path.
    #[cold]
    #[inline(never)]
    fn service(&mut self, now: u64) {
        if let Some(r) = self.link.take_reload() {
            self.cfg = r.config;
            self.state.reconfigure(&self.cfg, now);
            self.link.ack(r.generation);
        }
        if self.link.stats_enabled() {
            let c = self.snapshot();
            self.link.publish(&c);
        }
    }

    /// Runs one batch from `port`; returns how many frames it took.
    #[inline]
    fn batch(&mut self, port: Port, now: u64) -> usize {
        let n = self.qp.rx_batch(port, &mut self.rx);
        if n == 0 {
            return 0;
        }
        if self.stash.len() < STASH / 2 {
            self.top_up_stash();
        }
        let mut rx = std::mem::take(&mut self.rx);
        for mut f in rx.drain(..) {
            let len = f.len();
            let verdict = {
                let buf = self.qp.buf_mut(&mut f);
                let mut extra = Extra {
                    qp: &self.qp,
                    stash: &mut self.stash,
                    out: &mut self.frags,
                };
                process_frame(
                    buf,
                    len,
                    port.index(),
                    now,
                    &self.cfg,
                    &mut self.state,
                    &mut extra,
                )
            };
            match verdict {
                Verdict::Forward { len } => {
                    self.qp.set_len(&mut f, len);
                    self.tx(port.other(), f);
                }
                Verdict::Reply { len } => {
                    self.qp.set_len(&mut f, len);
                    self.tx(port, f);
                }
                Verdict::Fragments { first_len, .. } => {
                    self.qp.set_len(&mut f, first_len);
                    self.tx(port.other(), f);
                    let mut frags = std::mem::take(&mut self.frags);
                    for g in frags.drain(..) {
                        self.tx(port.other(), g);
                    }
                    self.frags = frags;
                    self.top_up_stash();
                }
                Verdict::Drop(_) => self.qp.free(f),
            }
        }
        self.rx = rx;
        n
    }

    /// Polls until `stop` is set, then drains and reports.
    pub fn run(mut self, stop: &AtomicBool) -> WorkerReport {
        self.top_up_stash();
        if let Err(e) = self.qp.refill() {
            tracing::warn!(queue = self.qp.queue_id(), "initial refill: {e}");
        }
        let start = Instant::now();
        let timing = self.link.stats_enabled();
        let mut idle = 0u32;
        while !stop.load(Ordering::Relaxed) {
            // One clock read per round of batches.
            let now = start.elapsed().as_nanos() as u64;
            let mut work = 0;
            for port in Port::BOTH {
                work += self.batch(port, now);
            }
            for port in Port::BOTH {
                // A failed kick is retried on the next round; the frames stay
                // in the ring and are accounted for.
                let _ = self.qp.flush_tx(port);
            }
            if timing && work > 0 {
                // Latency (statistics on, a round with work): one more clock
                // read, once the round's frames are on their TX rings. The
                // round took its frames off RX at `now`: each waited the whole
                // round (dwell), and the round cost this much per frame.
                let dwell = (start.elapsed().as_nanos() as u64).saturating_sub(now);
                let n = work as u64;
                self.link.record(n, dwell / n, dwell);
            }
            self.qp.reap_completions();
            let _ = self.qp.refill();
            self.polls += 1;
            if self.link.signalled() {
                self.service(now);
            }
            if work > 0 {
                self.busy_polls += 1;
                idle = 0;
            } else {
                idle += 1;
                if idle >= IDLE_POLLS {
                    let _ = self.qp.wait_rx(IDLE_WAIT_MS);
                }
            }
        }
        self.finish()
    }

    /// Flushes what is staged, waits (briefly, bounded) for the kernel to
    /// complete outstanding transmissions, returns the spare frames and
    /// checks that every frame is accounted for.
    fn finish(mut self) -> WorkerReport {
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            for port in Port::BOTH {
                let _ = self.qp.flush_tx(port);
            }
            self.qp.reap_completions();
            let c = self.qp.frame_counts();
            if c.tx_or_comp.iter().sum::<usize>() == 0 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for f in self.stash.drain(..) {
            self.qp.free(f);
        }
        let conservation_error = self.qp.check_conservation(0).err().map(|e| e.to_string());
        if self.link.stats_enabled() {
            let c = self.snapshot();
            self.link.publish_final(&c, FINAL_PUBLISH_WAIT);
        }
        let frames = self.qp.frame_counts();
        WorkerReport {
            queue: self.qp.queue_id(),
            counters: self.state.counters,
            io: [self.qp.counters(Port::A), self.qp.counters(Port::B)],
            kernel: [self.qp.stats(Port::A).ok(), self.qp.stats(Port::B).ok()],
            tx_ring_full_drops: self.tx_ring_full_drops,
            tx_packets: self.tx_packets,
            tx_bytes: self.tx_bytes,
            frames,
            conservation_error,
            busy_polls: self.busy_polls,
            polls: self.polls,
        }
    }
}
