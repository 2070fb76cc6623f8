//! Aggregation: the management thread's view of every worker, turned into
//! a [`Stats`] document once per interval.
//!
//! Workers publish cumulative counters, so the newest snapshot of each
//! worker is all that counts; rates are the difference between two
//! aggregations divided by the time between them. Latency arrives as the
//! histogram of what a worker recorded since its previous snapshot; it is
//! added to the worker's histogram of the current interval and to its
//! histogram since start.

use crate::link::{LatencyHists, WorkerCounters, WorkerSnapshot};
use crate::model::{
    IoStats, KernelSocketStats, Latency, PerFamily, PerIcmpType, Percentiles, PipelineCounters,
    PortRates, PortStage, PortStats, QueueStats, Rates, Reloads, RouteMirrorStats, RuleStats,
    Stats, Tabled, Windows, XdpPortStats,
};
use hdrhistogram::Histogram;
use mtugate_datapath::counters::CounterTable;
use mtugate_datapath::pipeline::{family, Counters, DropReason};

use std::collections::BTreeMap;
use std::time::Duration;

/// What the management thread knows about a worker before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Queue id.
    pub queue: u32,
    /// Core it is pinned to.
    pub core: Option<usize>,
}

#[derive(Debug)]
struct QueueAgg {
    info: QueueInfo,
    latest: WorkerCounters,
    prev: WorkerCounters,
    pending: LatencyHists,
    last_interval: LatencyHists,
    total: LatencyHists,
}

/// Every worker's numbers, and the document made of them.
#[derive(Debug)]
pub struct Aggregator {
    port_names: Vec<String>,
    interval: Duration,
    queues: Vec<QueueAgg>,
    last_tick: Duration,
    seq: u64,
    generation: u64,
    reloads: Reloads,
    merged_interval: LatencyHists,
    merged_total: LatencyHists,
    xdp: Vec<PortStage>,
    route_mirror: Option<RouteMirrorStats>,
    revision: String,
    stats: Stats,
}

/// Percentiles of a histogram (ns).
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        mean: h.mean(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p99_9: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

fn latency(interval: &LatencyHists, total: &LatencyHists) -> Latency {
    Latency {
        packet_cost_ns: Windows {
            interval: percentiles(&interval.cost),
            since_start: percentiles(&total.cost),
        },
        dwell_ns: Windows {
            interval: percentiles(&interval.dwell),
            since_start: percentiles(&total.dwell),
        },
    }
}

fn per_sec(delta: u64, dt: f64) -> f64 {
    if dt > 0.0 {
        delta as f64 / dt
    } else {
        0.0
    }
}

impl Aggregator {
    /// An aggregator for these workers (in worker index order).
    pub fn new(port_names: Vec<String>, queues: Vec<QueueInfo>, interval: Duration) -> Self {
        let nports = port_names.len();
        let mut a = Aggregator {
            port_names,
            interval,
            queues: queues
                .into_iter()
                .map(|info| QueueAgg {
                    info,
                    latest: WorkerCounters::new(nports),
                    prev: WorkerCounters::new(nports),
                    pending: LatencyHists::new(),
                    last_interval: LatencyHists::new(),
                    total: LatencyHists::new(),
                })
                .collect(),
            last_tick: Duration::ZERO,
            seq: 0,
            generation: 1,
            reloads: Reloads::default(),
            merged_interval: LatencyHists::new(),
            merged_total: LatencyHists::new(),
            xdp: Vec::new(),
            route_mirror: None,
            revision: "unknown".to_owned(),
            stats: Stats::default(),
        };
        a.stats = a.build(Duration::ZERO, 0.0);
        a
    }

    /// Takes in a worker's snapshot. Its latency histograms are left as
    /// they were: the caller empties them before handing the snapshot back.
    pub fn absorb(&mut self, snap: &WorkerSnapshot) {
        let Some(q) = self.queues.get_mut(snap.worker) else {
            return;
        };
        if snap.counters.pipeline.len() != self.port_names.len() {
            return; // not this appliance's port set: a caller's bug, ignore it
        }
        q.latest.clone_from(&snap.counters);
        q.pending.add(&snap.latency);
        q.total.add(&snap.latency);
        self.merged_total.add(&snap.latency);
    }

    /// Closes an interval at `uptime` (time since start): computes rates
    /// against the previous aggregation and rebuilds the document.
    pub fn tick(&mut self, uptime: Duration) {
        let dt = uptime.saturating_sub(self.last_tick).as_secs_f64();
        self.merged_interval.reset();
        for q in &mut self.queues {
            std::mem::swap(&mut q.pending, &mut q.last_interval);
            q.pending.reset();
            self.merged_interval.add(&q.last_interval);
        }
        self.seq += 1;
        self.stats = self.build(uptime, dt);
        for q in &mut self.queues {
            q.prev.clone_from(&q.latest);
        }
        self.last_tick = uptime;
    }

    /// The XDP stage's counters (per port in port order), for the next
    /// aggregation.
    pub fn set_xdp(&mut self, v: Vec<PortStage>) {
        self.xdp = v;
    }

    /// The route mirror's counters, for the next aggregation.
    pub fn set_route_mirror(&mut self, v: RouteMirrorStats) {
        self.route_mirror = Some(v);
    }

    /// Records the generation now in force.
    pub fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
        self.stats.config_generation = generation;
    }

    /// The source revision the binary was built from (`mtugate_build_info`).
    pub fn set_revision(&mut self, revision: String) {
        self.revision = revision;
        self.stats.revision = self.revision.clone();
    }

    /// Reload outcome counters.
    pub fn reloads_mut(&mut self) -> &mut Reloads {
        &mut self.reloads
    }

    /// The document as of the last [`tick`](Self::tick) (reload counters
    /// always current).
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.reloads = self.reloads.clone();
        s.config_generation = self.generation;
        s
    }

    /// Latency since start of each queue, in worker order, with its queue id.
    pub fn queue_latency(&self) -> Vec<(u32, &LatencyHists)> {
        self.queues
            .iter()
            .map(|q| (q.info.queue, &q.total))
            .collect()
    }

    /// Latency of all queues merged: the last interval, or since start.
    pub fn merged_latency(&self, since_start: bool) -> &LatencyHists {
        if since_start {
            &self.merged_total
        } else {
            &self.merged_interval
        }
    }

    fn port_stats(&self, c: &WorkerCounters, p: usize) -> PortStats {
        PortStats {
            port: self.port_names[p].clone(),
            counters: PipelineCounters(c.pipeline[p]),
            tx_packets: c.tx_packets[p],
            tx_bytes: c.tx_bytes[p],
            io: IoStats::new(&c.io[p], c.tx_ring_full_drops[p]),
            kernel: c.kernel[p].as_ref().map(KernelSocketStats::from),
        }
    }

    fn build(&self, uptime: Duration, dt: f64) -> Stats {
        let mut totals: Vec<PortStats> = self
            .port_names
            .iter()
            .map(|name| PortStats {
                port: name.clone(),
                kernel: Some(KernelSocketStats::default()),
                ..PortStats::default()
            })
            .collect();
        let nports = self.port_names.len();
        let mut sum_now = vec![Counters::default(); nports];
        let mut sum_prev = vec![Counters::default(); nports];
        let mut tx_now = 0;
        let mut tx_prev = 0;
        let mut queues = Vec::with_capacity(self.queues.len());
        for q in &self.queues {
            let (c, prev) = (&q.latest, &q.prev);
            let mut ports = Vec::with_capacity(nports);
            let mut rates = Vec::with_capacity(nports);
            for p in 0..nports {
                ports.push(self.port_stats(c, p));
                let (now_p, prev_p) = (&c.pipeline[p], &prev.pipeline[p]);
                rates.push(PortRates {
                    port: self.port_names[p].clone(),
                    rx_pps: per_sec(now_p.rx_packets - prev_p.rx_packets, dt),
                    rx_bps: 8.0 * per_sec(now_p.rx_bytes - prev_p.rx_bytes, dt),
                    tx_pps: per_sec(c.tx_packets[p] - prev.tx_packets[p], dt),
                    tx_bps: 8.0 * per_sec(c.tx_bytes[p] - prev.tx_bytes[p], dt),
                    drop_ps: per_sec(now_p.dropped() - prev_p.dropped(), dt),
                });
                sum_now[p].add(now_p);
                sum_prev[p].add(prev_p);
                tx_now += c.tx_packets[p];
                tx_prev += prev.tx_packets[p];
            }
            let dpolls = c.polls - prev.polls;
            let dbusy = c.busy_polls - prev.busy_polls;
            queues.push(QueueStats {
                queue: q.info.queue,
                core: q.info.core,
                polls: c.polls,
                busy_polls: c.busy_polls,
                busy_ratio: if dpolls > 0 {
                    dbusy as f64 / dpolls as f64
                } else {
                    0.0
                },
                frames_in_flight: c.frames_in_flight,
                frames_total: c.frames_total,
                ports,
                rates,
                latency: latency(&q.last_interval, &q.total),
            });
        }
        // Totals per port over queues.
        for (p, t) in totals.iter_mut().enumerate() {
            let mut kernel_all = true;
            for q in &queues {
                let s = &q.ports[p];
                t.tx_packets += s.tx_packets;
                t.tx_bytes += s.tx_bytes;
                t.io.add(&s.io);
                match (&mut t.kernel, &s.kernel) {
                    (Some(a), Some(b)) => a.add(b),
                    _ => kernel_all = false,
                }
            }
            if !kernel_all || queues.is_empty() {
                t.kernel = None;
            }
            t.counters = PipelineCounters(sum_now[p]);
        }
        let mut all_now = Counters::default();
        let mut all_prev = Counters::default();
        for p in 0..nports {
            all_now.add(&sum_now[p]);
            all_prev.add(&sum_prev[p]);
        }
        let d = |f: fn(&Counters) -> u64| per_sec(f(&all_now) - f(&all_prev), dt);
        let rates = Rates {
            rx_pps: d(|c| c.rx_packets),
            tx_pps: per_sec(tx_now - tx_prev, dt),
            drops: DropReason::ALL
                .iter()
                .map(|r| {
                    let i = *r as usize;
                    (
                        r.name().to_string(),
                        per_sec(all_now.drops[i] - all_prev.drops[i], dt),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            mss_clamped: PerFamily {
                ipv4: d(|c| c.mss_clamped[family::V4]),
                ipv6: d(|c| c.mss_clamped[family::V6]),
            },
            syn_limited: d(|c| c.syn_limited),
            fragmented: d(|c| c.fragmented),
            fragments_created: d(|c| c.fragments_created),
            icmp_sent: PerIcmpType {
                frag_needed: d(|c| c.icmp_sent[family::V4]),
                packet_too_big: d(|c| c.icmp_sent[family::V6]),
            },
            icmp_rate_limited: d(|c| c.icmp_rate_limited),
            malformed_passed: d(|c| c.malformed_passed),
            non_ip_passed: d(|c| c.non_ip_passed),
        };
        // Rules by name (workers may briefly disagree during a reload),
        // in the order first seen; learning summed.
        let mut rules: Vec<RuleStats> = Vec::new();
        let mut pmtu: Tabled<mtugate_datapath::pmtu::PmtuCounters> = Tabled::default();
        let mut entries = 0;
        for q in &self.queues {
            let c = &q.latest;
            for (name, rc) in c.rule_names.iter().zip(&c.rules) {
                match rules.iter_mut().find(|r| &r.rule == name) {
                    Some(r) => r.counters.0.add(rc),
                    None => rules.push(RuleStats {
                        rule: name.clone(),
                        counters: Tabled(*rc),
                    }),
                }
            }
            pmtu.0.add(&c.pmtu);
            entries = entries.max(c.pmtu.entries);
        }
        // The tables are shared: every worker reports the same number.
        pmtu.0.entries = entries;
        Stats {
            rules,
            pmtu,
            route_mirror: self.route_mirror,
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: self.revision.clone(),
            uptime_s: uptime.as_secs_f64(),
            interval_ms: self.interval.as_millis() as u64,
            seq: self.seq,
            config_generation: self.generation,
            reloads: self.reloads.clone(),
            port_names: self.port_names.to_vec(),
            queues,
            totals,
            rates,
            latency: latency(&self.merged_interval, &self.merged_total),
            xdp: self
                .port_names
                .iter()
                .zip(&self.xdp)
                .map(|(port, s)| XdpPortStats {
                    port: port.clone(),
                    stats: s.xdp,
                    nic: s.nic,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtugate_xsk::XskStats;

    fn snap(worker: usize, rx: [u64; 2], polls: u64, busy: u64) -> WorkerSnapshot {
        let mut c = WorkerCounters::new(2);
        for (p, &n) in rx.iter().enumerate() {
            c.pipeline[p].rx_packets = n;
            c.pipeline[p].rx_bytes = n * 100;
            c.pipeline[p].forwarded = n;
            c.tx_packets[1 - p] = n;
            c.tx_bytes[1 - p] = n * 100;
            c.kernel[p] = Some(XskStats {
                rx_ring_full: 1,
                ..XskStats::default()
            });
        }
        c.polls = polls;
        c.busy_polls = busy;
        WorkerSnapshot {
            worker,
            epoch: 1,
            counters: c,
            latency: LatencyHists::new(),
        }
    }

    fn agg() -> Aggregator {
        Aggregator::new(
            vec!["inside".into(), "outside".into()],
            vec![
                QueueInfo {
                    queue: 0,
                    core: Some(1),
                },
                QueueInfo {
                    queue: 1,
                    core: Some(2),
                },
            ],
            Duration::from_secs(1),
        )
    }

    #[test]
    fn totals_sum_queues_and_rates_use_the_interval() {
        let mut a = agg();
        a.absorb(&snap(0, [100, 10], 1000, 100));
        a.absorb(&snap(1, [50, 5], 1000, 500));
        a.tick(Duration::from_secs(1));
        let s = a.stats();
        assert_eq!(s.totals[0].counters.rx_packets, 150);
        assert_eq!(s.totals[1].counters.rx_packets, 15);
        assert_eq!(s.totals[1].tx_packets, 150);
        assert_eq!(s.rx_packets(), 165);
        assert_eq!(s.totals[0].kernel.as_ref().unwrap().rx_ring_full, 2);
        assert!((s.rates.rx_pps - 165.0).abs() < 1e-9);
        assert!((s.queues[1].busy_ratio - 0.5).abs() < 1e-9);
        // Half a second later, 50 more packets on queue 0 port 0.
        a.absorb(&snap(0, [150, 10], 2000, 1100));
        a.tick(Duration::from_millis(1500));
        let s = a.stats();
        assert!((s.rates.rx_pps - 100.0).abs() < 1e-9, "{}", s.rates.rx_pps);
        assert!((s.queues[0].rates[0].rx_pps - 100.0).abs() < 1e-9);
        assert!((s.queues[0].rates[0].rx_bps - 80_000.0).abs() < 1e-6);
        assert!((s.queues[0].busy_ratio - 1.0).abs() < 1e-9);
        assert_eq!(s.queues[1].busy_ratio, 0.0, "no polls in the interval");
        assert_eq!(s.seq, 2);
    }

    #[test]
    fn latency_merges_per_interval_and_since_start() {
        let mut a = agg();
        let mut s0 = snap(0, [1, 0], 1, 1);
        s0.latency.record(10, 100, 1000);
        let mut s1 = snap(1, [1, 0], 1, 1);
        s1.latency.record(10, 300, 3000);
        a.absorb(&s0);
        a.absorb(&s1);
        a.tick(Duration::from_secs(1));
        let l = a.stats().latency;
        assert_eq!(l.packet_cost_ns.interval.count, 20);
        assert_eq!(l.packet_cost_ns.since_start.count, 20);
        assert_eq!(l.packet_cost_ns.interval.p50, 100);
        assert_eq!(l.packet_cost_ns.interval.max, 300);
        // 3 significant digits: 3000 is reported as its bin's top, 3001.
        assert!(
            l.dwell_ns.interval.p99.abs_diff(3000) <= 3,
            "{:?}",
            l.dwell_ns
        );
        // The next interval has only worker 0's new batch.
        let mut s0 = snap(0, [2, 0], 2, 2);
        s0.latency.record(5, 200, 2000);
        a.absorb(&s0);
        a.tick(Duration::from_secs(2));
        let s = a.stats();
        assert_eq!(s.latency.packet_cost_ns.interval.count, 5);
        assert_eq!(s.latency.packet_cost_ns.interval.p50, 200);
        assert_eq!(s.latency.packet_cost_ns.since_start.count, 25);
        assert_eq!(s.queues[0].latency.packet_cost_ns.since_start.count, 15);
        assert_eq!(s.queues[1].latency.packet_cost_ns.interval.count, 0);
        assert_eq!(
            a.merged_latency(true).cost_sum_ns,
            100 * 10 + 300 * 10 + 200 * 5
        );
    }
}
