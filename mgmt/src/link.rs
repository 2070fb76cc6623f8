//! The worker's end: how a poll-mode worker hands its numbers to the
//! management thread and receives configuration changes, without a lock,
//! an allocation or a syscall on its hot path.
//!
//! # How it works
//!
//! - The management thread owns one *epoch* counter, shared by every
//!   worker. It bumps it (Release) once per statistics interval and on every
//!   reload. A worker loads it (Acquire: a plain load on x86) once per round
//!   of batches and compares it with the last value it saw
//!   ([`WorkerLink::signalled`]); that load and compare is the only cost of
//!   management on a round where nothing is asked.
//! - When the epoch moved, the worker (off its fast path,
//!   [`WorkerLink::take_reload`]) drains its reload channel, applies the new
//!   [`Config`] between two rounds (a batch boundary) and acknowledges the
//!   generation on an atomic only the management thread reads; then it
//!   publishes ([`WorkerLink::publish`]).
//! - Publishing is a double-buffered snapshot: the worker records latency
//!   into the [`WorkerSnapshot`] it holds, and at publication copies its
//!   plain counters into it and swaps it for a spare one that the management
//!   thread sent back (emptied) over a crossbeam channel. Two snapshots
//!   circulate per worker, so the steady state allocates nothing; if the
//!   management thread has not returned the spare yet, the worker skips this
//!   publication and keeps accumulating (counters are cumulative, histograms
//!   keep filling: nothing is lost, only delayed).
//! - Latency: per round with work (a batch from each port), the worker
//!   reads the clock once more after flushing TX (one `vDSO`
//!   `clock_gettime`, ~20 ns with the TSC clocksource): from the round's
//!   start, when its frames were taken off RX, to then is the dwell time of
//!   every frame of the round, and divided by their number, the cost per
//!   packet; [`WorkerLink::record`] adds both to HdrHistograms.

use crate::{HIST_HIGH_NS, HIST_SIGFIG};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use hdrhistogram::Histogram;
use mtugate_datapath::pipeline::{Config, Counters};
use mtugate_datapath::pmtu::PmtuCounters;
use mtugate_datapath::rules::RuleCounters;
use mtugate_xsk::{PortCounters, XskStats};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Everything a worker counts, cumulative since it started. Plain
/// integers, copied at publication (`clone_from` into the snapshot, whose
/// vectors keep their capacity: no allocation in the steady state). Every
/// per-port vector has one entry per port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Pipeline counters by ingress port.
    pub pipeline: Vec<Counters>,
    /// AF_XDP counters by port.
    pub io: Vec<PortCounters>,
    /// Kernel socket statistics by port (`None`: the query failed).
    pub kernel: Vec<Option<XskStats>>,
    /// Frames put on the TX path of each (egress) port.
    pub tx_packets: Vec<u64>,
    /// Bytes of those frames.
    pub tx_bytes: Vec<u64>,
    /// Frames freed because a TX ring was full, by egress port.
    pub tx_ring_full_drops: Vec<u64>,
    /// Rounds of the poll loop.
    pub polls: u64,
    /// Rounds that found work.
    pub busy_polls: u64,
    /// UMEM frames not in the free list.
    pub frames_in_flight: u64,
    /// Frames in the UMEM.
    pub frames_total: u64,
    /// The names of the rules `rules` counts for (shared with the
    /// configuration: copying them copies a pointer).
    pub rule_names: Arc<[String]>,
    /// Per rule, in the configuration's order.
    pub rules: Vec<RuleCounters>,
    /// Learned path MTUs.
    pub pmtu: PmtuCounters,
}

impl WorkerCounters {
    /// All zero, for `ports` ports.
    pub fn new(ports: usize) -> WorkerCounters {
        WorkerCounters {
            pipeline: vec![Counters::default(); ports],
            io: vec![PortCounters::default(); ports],
            kernel: vec![None; ports],
            tx_packets: vec![0; ports],
            tx_bytes: vec![0; ports],
            tx_ring_full_drops: vec![0; ports],
            ..WorkerCounters::default()
        }
    }
}

/// Latency recorded by one worker since its previous publication.
#[derive(Debug, Clone)]
pub struct LatencyHists {
    /// Processing time of a batch (receive to transmit) divided by its
    /// size, in ns, recorded once per packet of the batch.
    pub cost: Histogram<u64>,
    /// Time from taking a batch off the RX ring to flushing it to TX, in
    /// ns, recorded once per packet of the batch.
    pub dwell: Histogram<u64>,
    /// Exact sum of the recorded cost values (ns × packets).
    pub cost_sum_ns: u64,
    /// Exact sum of the recorded dwell values (ns × packets).
    pub dwell_sum_ns: u64,
}

/// A fresh latency histogram: 1 ns to [`HIST_HIGH_NS`], 3 significant
/// digits, fixed size (recording never allocates).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_HIGH_NS, HIST_SIGFIG).expect("valid histogram bounds")
}

impl LatencyHists {
    /// Empty histograms.
    pub fn new() -> LatencyHists {
        LatencyHists {
            cost: new_histogram(),
            dwell: new_histogram(),
            cost_sum_ns: 0,
            dwell_sum_ns: 0,
        }
    }

    /// Records one batch of `packets` packets.
    #[inline]
    pub fn record(&mut self, packets: u64, cost_ns: u64, dwell_ns: u64) {
        let cost_ns = cost_ns.clamp(1, HIST_HIGH_NS);
        let dwell_ns = dwell_ns.clamp(1, HIST_HIGH_NS);
        self.cost.saturating_record_n(cost_ns, packets);
        self.dwell.saturating_record_n(dwell_ns, packets);
        self.cost_sum_ns = self.cost_sum_ns.wrapping_add(cost_ns * packets);
        self.dwell_sum_ns = self.dwell_sum_ns.wrapping_add(dwell_ns * packets);
    }

    /// Adds another set (merging workers or intervals).
    pub fn add(&mut self, o: &LatencyHists) {
        // Same bounds everywhere: adding cannot fail.
        let _ = self.cost.add(&o.cost);
        let _ = self.dwell.add(&o.dwell);
        self.cost_sum_ns = self.cost_sum_ns.wrapping_add(o.cost_sum_ns);
        self.dwell_sum_ns = self.dwell_sum_ns.wrapping_add(o.dwell_sum_ns);
    }

    /// Empties them.
    pub fn reset(&mut self) {
        self.cost.reset();
        self.dwell.reset();
        self.cost_sum_ns = 0;
        self.dwell_sum_ns = 0;
    }
}

impl Default for LatencyHists {
    fn default() -> Self {
        Self::new()
    }
}

/// What a worker publishes: its cumulative counters and the latency it
/// recorded since its previous publication.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot {
    /// Index of the worker (position in the list given to the management
    /// thread).
    pub worker: usize,
    /// The epoch the worker answered.
    pub epoch: u64,
    /// Cumulative counters.
    pub counters: WorkerCounters,
    /// Latency since the previous snapshot.
    pub latency: LatencyHists,
}

impl WorkerSnapshot {
    pub(crate) fn new(worker: usize) -> Box<WorkerSnapshot> {
        Box::new(WorkerSnapshot {
            worker,
            epoch: 0,
            counters: WorkerCounters::default(),
            latency: LatencyHists::new(),
        })
    }
}

/// A configuration change sent to every worker.
#[derive(Debug, Clone)]
pub struct Reload {
    /// Generation number (1 is the configuration the appliance started with).
    pub generation: u64,
    /// The new configuration.
    pub config: Arc<Config>,
}

/// The epoch, alone on its cache line: written once per interval and per
/// reload, read by every worker once per round.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Epoch(pub(crate) AtomicU64);

/// The acknowledged generation of one worker, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Applied(pub(crate) AtomicU64);

/// A worker's end of the management link. Owned by the worker thread.
#[derive(Debug)]
pub struct WorkerLink {
    worker: usize,
    epoch: Arc<Epoch>,
    seen: u64,
    reloads: Receiver<Reload>,
    applied: Arc<Applied>,
    out: Sender<Box<WorkerSnapshot>>,
    spare: Receiver<Box<WorkerSnapshot>>,
    cur: Box<WorkerSnapshot>,
    stats: bool,
}

/// The management thread's end of one worker's link.
#[derive(Debug)]
pub(crate) struct MgmtEnd {
    pub(crate) reloads: Sender<Reload>,
    pub(crate) applied: Arc<Applied>,
    pub(crate) spare: Sender<Box<WorkerSnapshot>>,
}

/// Builds the link of worker `worker`: its end, and the management end.
/// `out` is the channel every worker publishes into.
pub(crate) fn link(
    worker: usize,
    epoch: Arc<Epoch>,
    out: Sender<Box<WorkerSnapshot>>,
    stats: bool,
    generation: u64,
) -> (WorkerLink, MgmtEnd) {
    let (reload_tx, reload_rx) = crossbeam_channel::bounded(4);
    let (spare_tx, spare_rx) = crossbeam_channel::bounded(2);
    if stats {
        // The second snapshot of the pair starts out as the spare.
        let _ = spare_tx.try_send(WorkerSnapshot::new(worker));
    }
    let applied = Arc::new(Applied(AtomicU64::new(generation)));
    let seen = epoch.0.load(Ordering::Acquire);
    (
        WorkerLink {
            worker,
            epoch,
            seen,
            reloads: reload_rx,
            applied: applied.clone(),
            out,
            spare: spare_rx,
            cur: WorkerSnapshot::new(worker),
            stats,
        },
        MgmtEnd {
            reloads: reload_tx,
            applied,
            spare: spare_tx,
        },
    )
}

impl WorkerLink {
    /// A link to nothing (tests, tools): never signalled, statistics off.
    pub fn detached() -> WorkerLink {
        let (out, _) = crossbeam_channel::bounded(1);
        link(0, Arc::new(Epoch::default()), out, false, 1).0
    }

    /// Whether statistics are collected (`mgmt.interval_ms` > 0): when not,
    /// the worker should not read the clock for latency nor call
    /// [`record`](Self::record).
    #[inline]
    pub fn stats_enabled(&self) -> bool {
        self.stats
    }

    /// Whether the management thread asked for something since the last
    /// call: one atomic load and a compare. Call once per round.
    #[inline]
    pub fn signalled(&mut self) -> bool {
        let e = self.epoch.0.load(Ordering::Acquire);
        if e == self.seen {
            return false;
        }
        self.seen = e;
        true
    }

    /// The newest pending configuration change, if any (older ones it
    /// supersedes are skipped).
    pub fn take_reload(&mut self) -> Option<Reload> {
        let mut last = None;
        loop {
            match self.reloads.try_recv() {
                Ok(r) => last = Some(r),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return last,
            }
        }
    }

    /// Tells the management thread that `generation` is in force.
    pub fn ack(&self, generation: u64) {
        self.applied.0.store(generation, Ordering::Release);
    }

    /// Records the latency of one batch of `packets` packets: processing
    /// cost per packet and dwell time, in ns.
    #[inline]
    pub fn record(&mut self, packets: u64, cost_ns: u64, dwell_ns: u64) {
        self.cur.latency.record(packets, cost_ns, dwell_ns);
    }

    /// Publishes `counters` and the latency recorded so far. Returns false
    /// (and keeps accumulating) when the management thread has not yet
    /// returned the spare snapshot, or statistics are off.
    pub fn publish(&mut self, counters: &WorkerCounters) -> bool {
        if !self.stats {
            return false;
        }
        let Ok(fresh) = self.spare.try_recv() else {
            return false;
        };
        self.hand_over(fresh, counters)
    }

    /// A last publication when the worker stops: waits (bounded) for the
    /// spare if the management thread still holds it.
    pub fn publish_final(&mut self, counters: &WorkerCounters, wait: Duration) -> bool {
        if !self.stats {
            return false;
        }
        let Ok(fresh) = self.spare.recv_timeout(wait) else {
            return false;
        };
        self.hand_over(fresh, counters)
    }

    fn hand_over(&mut self, mut fresh: Box<WorkerSnapshot>, counters: &WorkerCounters) -> bool {
        fresh.worker = self.worker;
        std::mem::swap(&mut fresh, &mut self.cur);
        let mut full = fresh;
        full.epoch = self.seen;
        full.counters.clone_from(counters);
        // Two snapshots circulate and the worker holds one, so the channel
        // (capacity 2 per worker) has room unless the receiver is gone.
        self.out.try_send(full).is_ok()
    }
}

/// A link whose management end the caller holds (benchmarks, tests of a
/// worker loop without the management thread).
#[derive(Debug)]
pub struct Loopback {
    epoch: Arc<Epoch>,
    out: Receiver<Box<WorkerSnapshot>>,
    end: MgmtEnd,
}

/// A worker link, statistics on, and its [`Loopback`] end.
pub fn loopback() -> (WorkerLink, Loopback) {
    let epoch = Arc::new(Epoch::default());
    let (out_tx, out_rx) = crossbeam_channel::bounded(4);
    let (l, end) = link(0, epoch.clone(), out_tx, true, 1);
    (
        l,
        Loopback {
            epoch,
            out: out_rx,
            end,
        },
    )
}

impl Loopback {
    /// Signals the worker (bumps the epoch).
    pub fn signal(&self) {
        self.epoch.0.fetch_add(1, Ordering::Release);
    }

    /// Sends a configuration change and signals.
    pub fn reload(&self, generation: u64, config: Arc<Config>) {
        let _ = self.end.reloads.try_send(Reload { generation, config });
        self.signal();
    }

    /// The generation the worker acknowledged.
    pub fn applied(&self) -> u64 {
        self.end.applied.0.load(Ordering::Acquire)
    }

    /// Takes the published snapshots, calls `f` on each, and hands them
    /// back as spares (not emptied). Returns how many there were.
    pub fn recycle(&self, mut f: impl FnMut(&WorkerSnapshot)) -> usize {
        let mut n = 0;
        while let Ok(s) = self.out.try_recv() {
            f(&s);
            let _ = self.end.spare.try_send(s);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtugate_datapath::pipeline::Settings;

    #[test]
    fn publish_swaps_and_nothing_is_lost_when_mgmt_is_late() {
        let (mut w, m) = loopback();
        let mut c = WorkerCounters::new(2);
        w.record(10, 100, 1000);
        c.polls = 1;
        assert!(w.publish(&c));
        // Management has not returned the first snapshot: the only spare
        // is in use, the next publication is skipped, recording goes on.
        w.record(5, 200, 2000);
        c.polls = 2;
        assert!(!w.publish(&c));
        let mut seen = Vec::new();
        assert_eq!(
            m.recycle(|s| seen.push((s.counters.polls, s.latency.cost.len()))),
            1
        );
        assert_eq!(seen, [(1, 10)]);
        // Now it can publish again, and the late batch is in it.
        c.polls = 3;
        assert!(w.publish(&c));
        let mut seen = Vec::new();
        m.recycle(|s| seen.push((s.counters.polls, s.latency.cost.len())));
        assert_eq!(seen, [(3, 5)]);
    }

    #[test]
    fn signal_reload_ack() {
        let (mut w, m) = loopback();
        assert!(!w.signalled());
        let cfg = Arc::new(Config::new(Settings::default()).unwrap());
        m.reload(2, cfg.clone());
        m.reload(3, cfg);
        assert!(w.signalled());
        assert!(!w.signalled(), "one signal, seen once");
        let r = w.take_reload().unwrap();
        assert_eq!(r.generation, 3, "the newest wins");
        assert!(w.take_reload().is_none());
        assert_eq!(m.applied(), 1);
        w.ack(r.generation);
        assert_eq!(m.applied(), 3);
    }

    #[test]
    fn detached_link_is_quiet() {
        let mut w = WorkerLink::detached();
        assert!(!w.stats_enabled());
        assert!(!w.signalled());
        assert!(!w.publish(&WorkerCounters::default()));
    }
}
